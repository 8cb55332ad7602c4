"""Small helpers shared across the package, one home each: argument checks (`checks`), atomic file
writes, file digests and YAML mappings (`fileio`), byte progress bars (`progress`), close-match
suggestions for error messages (`names`), plain dicts and lists from config nodes (`plain`), the bare
module inside training wrappers (`modules`), and mixed precision (`precision`)."""
