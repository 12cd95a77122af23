"""Run a converted ncnn model on saved inputs; executed as a child process by ncnn_check.

ncnn crashes the whole process when a blob is extracted after a failed `ex.input`, so this runs
apart from the worker, checks every return code, and reports failures through its exit status
and one JSON line on stdout. It imports only numpy and ncnn: no torch, no exportq.

    python ncnn_child.py    (then the path of JOB.json on one line of stdin)

It is started before the model exists: loading Python, numpy and ncnn overlaps the
conversion, and the job's path arrives on stdin when PNNX is done.
"""

import json
import sys
from typing import Any, NoReturn

import ncnn
import numpy as np

EXIT_LOAD, EXIT_INPUT, EXIT_EXTRACT = 3, 4, 5
Blob = dict[str, Any]  # {"blob": "in0", "batch_index": 0 or None}


def fail(code: int, message: str) -> NoReturn:
    print(json.dumps({"error": message}), flush=True)
    sys.exit(code)


def batch_axis(arr: np.ndarray, spec: Blob) -> int | None:
    """The axis to split a batch on, or None. PNNX writes batch_index=233 for "no batch axis"."""
    bi = spec["batch_index"]
    return bi if bi is not None and bi < arr.ndim else None


def as_mat_array(arr: np.ndarray) -> np.ndarray:
    # ncnn reads integer inputs (token ids) as int32 and everything else as float32; an int64
    # array would be taken bit for bit and give garbage.
    dtype = (
        np.int32 if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_ else np.float32
    )
    return np.ascontiguousarray(arr, dtype=dtype)


def batch_size(arrays: list[np.ndarray], inputs: list[Blob]) -> int:
    sizes = {
        arr.shape[axis]
        for arr, spec in zip(arrays, inputs, strict=True)
        if (axis := batch_axis(arr, spec)) is not None
    }
    if len(sizes) > 1:
        fail(EXIT_INPUT, f"inputs disagree on the batch size: {sorted(sizes)}")
    return sizes.pop() if sizes else 1


def run_once(
    net: Any, arrays: list[np.ndarray], inputs: list[Blob], outputs: list[Blob], item: int
) -> list[np.ndarray]:
    with net.create_extractor() as ex:
        for arr, spec in zip(arrays, inputs, strict=False):
            bi, axis = spec["batch_index"], batch_axis(arr, spec)
            part = as_mat_array(arr if axis is None else np.take(arr, [item], axis=axis))
            mat = ncnn.Mat(part).clone() if bi is None else ncnn.Mat(part, batch_index=bi).clone()
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


def main(job_path: str) -> None:
    with open(job_path) as f:
        job = json.load(f)
    net = ncnn.Net()
    if not job["fp16"]:
        # ncnn computes in fp16 by default where the CPU can (AVX-512 FP16, ARMv8.2): an fp32
        # export is checked with fp32 arithmetic, so its tolerance can stay tight.
        net.opt.use_fp16_packed = False
        net.opt.use_fp16_storage = False
        net.opt.use_fp16_arithmetic = False
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
                one = len(parts) == 1 or bo is None or bo >= parts[0].ndim
                merged = parts[0] if one else np.concatenate(parts, axis=bo)
                results[f"{set_name}__{j}"] = merged
    np.savez(job["outputs_npz"], **results)  # type: ignore[arg-type]
    net.clear()


if __name__ == "__main__":
    job_path = sys.stdin.readline().strip()
    if job_path:  # an empty line: the export ended before ncnn was needed
        main(job_path)
