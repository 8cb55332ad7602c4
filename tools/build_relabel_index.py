"""Build unifiedseg/resources/relabel/records.tsv.xz from MSeg's `relabeled_data/` folder (a maintainer's
step: the index ships with the project). See unifiedseg/data/relabel.py.

    python tools/build_relabel_index.py ../shared/reference/mseg/relabeled_data
"""

import argparse
import lzma
from pathlib import Path

from unifiedseg.data.relabel import INDEX_PATH, build_index_text
from unifiedseg.utils.fileio import atomic_write


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Build the relabel index shipped with the project from MSeg's "
                                                 "record files (RECORDS.tsv and the files it names).")
    parser.add_argument("records_dir", help="MSeg's relabeled_data/ folder")
    parser.add_argument("--out", default=str(INDEX_PATH), help=f"index to write (default: {INDEX_PATH})")
    args = parser.parse_args(argv)
    text, counts = build_index_text(Path(args.records_dir))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, lambda handle: handle.write(lzma.compress(text.encode("utf-8"), preset=9 | lzma.PRESET_EXTREME)))
    print(f"wrote {args.out}: {sum(counts.values())} records ({', '.join(f'{g} {n}' for g, n in counts.items())})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
