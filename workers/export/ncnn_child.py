"""Run a converted ncnn model on saved inputs; executed as a child process by ncnn_check.

ncnn crashes the whole process when a blob is extracted after a failed `ex.input`, so this runs
apart from the worker, checks every return code, and reports failures through its exit status
and one JSON line on stdout. It imports only numpy and ncnn: no torch, no exportq.

    python ncnn_child.py JOB.json
"""

import json
import sys

import ncnn
import numpy as np

EXIT_LOAD, EXIT_INPUT, EXIT_EXTRACT = 3, 4, 5


def fail(code, message):
    print(json.dumps({"error": message}), flush=True)
    sys.exit(code)


def batch_size(arrays, inputs):
    sizes = {
        arrays[i].shape[spec["batch_index"]]
        for i, spec in enumerate(inputs)
        if spec["batch_index"] is not None
    }
    if len(sizes) > 1:
        fail(EXIT_INPUT, f"inputs disagree on the batch size: {sorted(sizes)}")
    return sizes.pop() if sizes else 1


def run_once(net, arrays, inputs, outputs, item):
    with net.create_extractor() as ex:
        for arr, spec in zip(arrays, inputs, strict=False):
            bi = spec["batch_index"]
            if bi is None:
                mat = ncnn.Mat(np.ascontiguousarray(arr, dtype=np.float32)).clone()
            else:
                part = np.ascontiguousarray(np.take(arr, [item], axis=bi), dtype=np.float32)
                mat = ncnn.Mat(part, batch_index=bi).clone()
            if ex.input(spec["blob"], mat) != 0:
                fail(EXIT_INPUT, f"ncnn refused input {spec['blob']} of shape {list(arr.shape)}")
        results = []
        for spec in outputs:
            rc, mat = ex.extract(spec["blob"])
            if rc != 0:
                fail(EXIT_EXTRACT, f"ncnn could not compute output {spec['blob']} (status {rc})")
            bo = spec["batch_index"]
            results.append(np.array(mat.numpy() if bo is None else mat.numpy(batch_index=bo)))
        return results


def main(job_path):
    with open(job_path) as f:
        job = json.load(f)
    net = ncnn.Net()
    if net.load_param(job["param"]) != 0:
        fail(EXIT_LOAD, "ncnn could not parse the .ncnn.param file")
    if net.load_model(job["bin"]) != 0:
        fail(EXIT_LOAD, "ncnn could not load the .ncnn.bin weights")
    inputs, outputs = job["inputs"], job["outputs"]
    results = {}
    with np.load(job["inputs_npz"]) as npz:
        for set_name in job["sets"]:
            arrays = [npz[f"{set_name}__{i}"] for i in range(len(inputs))]
            per_item = [
                run_once(net, arrays, inputs, outputs, k) for k in range(batch_size(arrays, inputs))
            ]
            for j, spec in enumerate(outputs):
                parts = [item[j] for item in per_item]
                bo = spec["batch_index"]
                merged = (
                    parts[0] if len(parts) == 1 or bo is None else np.concatenate(parts, axis=bo)
                )
                results[f"{set_name}__{j}"] = merged
    np.savez(job["outputs_npz"], **results)
    net.clear()


if __name__ == "__main__":
    main(sys.argv[1])
