"""The exit codes of `tools/train.py` (README.md, "The main job", lists them), so that scripts can
tell a finished run from one to resume and from one that failed: `train && test` goes on only after
a finished run.

Under torchrun every worker exits with these, and torchrun itself exits 0 when all workers did, else 1
(restarting the workers first while --max-restarts allows: each restart resumes).
"""

FINISHED = 0  # every iteration ran: final.pth and final_metrics.json are written
ERROR = 1     # the run failed (bad data, a checkpoint that does not fit, a full disk, a held work dir, ...)
USAGE = 2     # a bad command line or config: nothing was started (argparse exits 2 as well)
STOPPED = 75  # stopped early by SIGTERM / SIGINT or a hook, after a checkpoint: run the same command to resume
#             (75 is EX_TEMPFAIL of sysexits.h: "try again later"; job schedulers may requeue on it)
