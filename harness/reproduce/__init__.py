"""Reproduction recipes: a published table's cells as data (recipes/*.toml), the harness runs that measure them,
and a verdict table (`harness reproduce`). `recipe` is the schema, loader and validation; `runner` runs the cells
(resumably: run directories are reused by identity) and writes the verdict."""
