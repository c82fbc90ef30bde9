"""The larger fuzz run of `cfglab check` (issue 21): N seeded mutations of the shipped grammars
(tests/fuzzing.py), counted as ok / located error / unlocated error / other exception / over the
time bound, with the worst time and peak traced memory. Run under `flock /work/heavy.lock`:

    python benchmarks/bench_fuzz.py [N] [FIRST_SEED] [MINUTES]

MINUTES (default: none) stops the run after that much wall-clock time; the counts then cover
the inputs run so far, and the summary line says how many.
"""

from __future__ import annotations

import collections
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fuzzing, as in the suite

from tests.fuzzing import check_file, mutate


def main(n: int = 10_000, first: int = 0, minutes: int = 0) -> None:
    counts: collections.Counter[str] = collections.Counter()
    worst = peak = 0.0
    stop = time.monotonic() + minutes * 60 if minutes else float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mutant.cfg"
        for seed in range(first, first + n):
            if time.monotonic() > stop:
                break
            kind, data = mutate(seed)
            path.write_bytes(data)
            o = check_file(path)
            counts[o.kind] += 1
            worst, peak = max(worst, o.seconds), max(peak, o.peak_bytes)
            if o.kind in ("other", "timeout", "error") or o.seconds > 5 or o.peak_bytes > 300e6:
                print(
                    f"seed {seed} ({kind}): {o.kind} {o.seconds:.1f} s "
                    f"{o.peak_bytes / 1e6:.0f} MB {o.detail[:160]}"
                )
    print(
        f"{counts.total()} inputs (seeds {first}-{first + counts.total() - 1}): "
        f"ok {counts['ok']}, located error {counts['located']}, unlocated error "
        f"{counts['error']}, other exception {counts['other']}, over 10 s {counts['timeout']}; "
        f"worst {worst:.1f} s, peak {peak / 1e6:.0f} MB"
    )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
