#!/bin/bash
# One training run of configs/acs.py with the machine's load logged beside it (for benchmarks/acs_curves.py):
#   PYTHON=.venv/bin/python benchmarks/acs_run.sh VARIANT WORKDIR [--config.KEY=VALUE ...]
# writes WORKDIR/train.log (the trainer's output, then "exit CODE") and WORKDIR/loadavg.log ("UNIX_TIME 1MIN 5MIN
# 15MIN" every 30 s). Run under nohup for long runs; a rerun with the same WORKDIR resumes.
variant=$1; workdir=$(realpath -m "$2"); shift 2
mkdir -p "$workdir"
echo "$(date +%s) $(cut -d' ' -f1-3 /proc/loadavg)" >> "$workdir/loadavg.log"
( while sleep 30; do echo "$(date +%s) $(cut -d' ' -f1-3 /proc/loadavg)"; done >> "$workdir/loadavg.log" ) &
logger=$!
cd "$(dirname "$0")/.." && nice -n 5 "${PYTHON:-python}" -m train --config "configs/acs.py:$variant" \
    --workdir "$workdir" "$@" > "$workdir/train.log" 2>&1
echo "exit $?" >> "$workdir/train.log"
kill $logger
