"""Small helpers shared across the package, one home each: argument checks (`checks`), atomic file
writes and YAML mappings (`fileio`), close-match suggestions for error messages (`names`), plain
dicts and lists from config nodes (`plain`), the bare module inside training wrappers (`modules`),
and mixed precision (`precision`)."""
