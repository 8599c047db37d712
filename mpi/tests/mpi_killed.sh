#!/bin/sh
# A rank killed mid-run ends the whole job with a non-zero status within a
# time limit (no hang), and rank 0's last checkpoint is intact.
mpirun=$1 prog=$2 ckpt=$3
timeout 120 "$mpirun" --oversubscribe --allow-run-as-root -np 2 "$prog" killed "$ckpt" >/dev/null 2>&1
rc=$?
if [ "$rc" -eq 124 ]; then echo "the job hung after a rank was killed"; exit 1; fi
if [ "$rc" -eq 0 ]; then echo "the job succeeded although a rank was killed"; exit 1; fi
echo "job ended with status $rc"
"$mpirun" --oversubscribe --allow-run-as-root -np 1 "$prog" checkpoint "$ckpt" || { echo "checkpoint broken"; exit 1; }
