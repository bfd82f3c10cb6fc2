"""Floor 1, the data: from a release (downloaded, synthetic or a folder of rated photos) to the tables and the
uint8 image cache training reads. No torch here: every module runs in the light jobs of the workflow.

`download`, `lockfile`, `archives`: getting release files right; `formats/`: one module per release format
(AADB, EVA, `table` = any folder of photos with a CSV/TSV); `synthetic/`: releases in those formats drawn from
calibrated statistics; `splits`, `scaling`: split tables and [0, 1] labels; `images`, `image_cache`,
`integrity`: one photo decoded, every photo of a dataset cached and checked; `photos`: what `predict` scores.
"""
