"""Human-readable rendering of reports for the terminal (the CLI's default output)."""

from __future__ import annotations

from exportq.report import Comparison, ExportReport


def worst_error(report: ExportReport | None, step: str) -> str:
    """The worst relative error of `step` against eager, for one-line tables."""
    result = report.step(step) if report else None
    row = result.worst() if result else None
    return "-" if row is None else f"{row.max_rel:.1e}"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def render_report(report: ExportReport) -> str:
    lines: list[str] = []
    if report.succeeded:
        lines.append(f"export succeeded (method: {report.method or 'torchscript input'})")
    else:
        err = report.error
        assert err is not None
        lines.append(f"export FAILED at stage {err.stage}: [{err.code}] {err.message}")
    if report.steps:
        lines.append("")
        lines.append("validation (worst per step and output, against eager):")
        lines.append(
            f"  {'step':<12} {'output':<16} {'max rel':>10} {'max abs':>10} {'cosine':>10}  ok"
        )
        for step in report.steps:
            for row in _worst_per_output(step.against_eager):
                lines.append(
                    f"  {step.step:<12} {row.output:<16} {row.max_rel:>10.3g} "
                    f"{row.max_abs:>10.3g} {row.cosine:>10.6f}  {'yes' if row.passed else 'NO'}"
                )
            lines.append(
                f"  {'':<12} (limit: max rel {step.tolerance.max_rel:g}, cosine {step.tolerance.min_cosine:g})"
            )
    if report.first_divergent_step:
        lines.append(f"first divergent step: {report.first_divergent_step}")
    if report.artifacts:
        lines.append("")
        lines.append("artifacts:")
        for a in report.artifacts:
            lines.append(f"  {a.kind:<12} {a.name:<24} {_size(a.size):>10}  {a.sha256[:19]}…")
    if report.warnings:
        lines.append("")
        lines.append("warnings:")
        lines.extend(f"  - {w}" for w in report.warnings)
    if report.timings:
        lines.append("")
        total = sum(report.timings.values())
        lines.append(
            "timings: "
            + ", ".join(f"{k} {v:.2f}s" for k, v in report.timings.items())
            + f" (total {total:.2f}s)"
        )
    if report.error and report.error.log_tail:
        lines.append("")
        lines.append("log tail:")
        lines.extend("  " + line for line in report.error.log_tail.splitlines()[-20:])
    return "\n".join(lines)


def _worst_per_output(rows: list[Comparison]) -> list[Comparison]:
    worst: dict[str, Comparison] = {}
    for row in rows:
        current = worst.get(row.output)
        if current is None or (not row.passed, row.max_rel) > (not current.passed, current.max_rel):
            worst[row.output] = row
    return list(worst.values())
