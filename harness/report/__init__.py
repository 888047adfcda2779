"""Reports of finished runs, all recomputed from their rows: `reader` (one run directory), `table` (`harness table`
and what `harness run` prints), `compare` with `stats` (`harness compare`), `plots`, `html`, `bundle` (all of them
in one folder), `formats` (the one Markdown, LaTeX, CSV and rich writer)."""
