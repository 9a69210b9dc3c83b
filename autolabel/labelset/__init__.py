"""The on-disk format of a label set, read and written by every stage.

    OUT/labelset.json       provenance and id (:mod:`~autolabel.labelset.meta`)
    OUT/labels/<rel>.png    one label PNG per image (:mod:`~autolabel.labelset.files`)
    OUT/confidence.zarr     per-pixel confidence codes (:mod:`~autolabel.labelset.confidence`)
    OUT/manifest/*.parquet  one row per image (:mod:`~autolabel.labelset.manifest`), with the checksum of
                            every output file and the input's fingerprint (:mod:`~autolabel.labelset.checksums`)
    OUT/manifest/.journal-* rows of finished images not in a part yet (:mod:`~autolabel.labelset.journal`)
    OUT/.locks/             one lock per shard (:mod:`~autolabel.labelset.lock`)

:mod:`~autolabel.labelset.verify` checks a label set, :mod:`~autolabel.labelset.rethreshold` derives a new one
from the confidence store, :mod:`~autolabel.labelset.human` writes human label maps in the same format.
"""

from autolabel.labelset.manifest import (
    CENTROID_TYPE,
    MANIFEST_SCHEMA,
    OUTPUT_FILE_TYPE,
    SIGNAL_COLUMNS,
    SOURCES,
    TIMING_COLUMNS,
    dedupe,
    merge_manifest,
    part_name,
    part_paths,
    read_all_rows,
    read_manifest,
    read_part,
    rows_by_id,
    rows_to_table,
    summarise,
    table_to_parquet,
    write_part,
)
from autolabel.labelset.meta import (
    ATTENTION_DIR,
    FORMAT_VERSION,
    LABELS_DIR,
    LABELSET_FILE,
    MANIFEST_DIR,
    MERGED_MANIFEST,
    REPORT_DIR,
    STORE_NAME,
    labelset_id,
    make_labelset_meta,
    prepare_output,
    read_labelset,
    remove_labelset_files,
    write_labelset,
)

__all__ = [
    "ATTENTION_DIR",
    "CENTROID_TYPE",
    "FORMAT_VERSION",
    "LABELSET_FILE",
    "LABELS_DIR",
    "MANIFEST_DIR",
    "MANIFEST_SCHEMA",
    "OUTPUT_FILE_TYPE",
    "MERGED_MANIFEST",
    "REPORT_DIR",
    "SIGNAL_COLUMNS",
    "SOURCES",
    "STORE_NAME",
    "TIMING_COLUMNS",
    "dedupe",
    "labelset_id",
    "make_labelset_meta",
    "merge_manifest",
    "part_name",
    "part_paths",
    "prepare_output",
    "read_all_rows",
    "read_labelset",
    "read_manifest",
    "read_part",
    "remove_labelset_files",
    "rows_by_id",
    "rows_to_table",
    "summarise",
    "table_to_parquet",
    "write_labelset",
    "write_part",
]
