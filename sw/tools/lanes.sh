#!/usr/bin/env bash
# Run one trigkit stage over models in parallel lanes: the models of a lane run one after the
# other (a teacher before its student), the lanes side by side, each training on one CPU thread
# when there are several lanes. Prints each model's and the stage's wall time; exits non-zero
# when any model failed (the other lanes still finish).
#
# usage: lanes.sh TRIGKIT STAGE "EXTRA ARGS" "LANE 1 MODELS" ["LANE 2 MODELS" ...]
set -euo pipefail
trigkit=$1 stage=$2 extra=$3
shift 3
n_lanes=$#
t_stage=$SECONDS
parallel_args=()
if [ "$n_lanes" -gt 1 ]; then
  case $stage in
    train) parallel_args=(--threads 1 --no-progress) ;;
    export) parallel_args=(--no-progress) ;;
  esac
fi
pids=()
for lane in "$@"; do
  (
    for m in $lane; do
      t0=$SECONDS
      echo "== $stage $m =="
      # shellcheck disable=SC2086  # extra holds several arguments
      if ! "$trigkit" "$stage" --model "$m" $extra "${parallel_args[@]}" 2>&1 \
          | sed -u "s/^/[$m] /"; then
        echo "== $stage $m: FAILED after $((SECONDS - t0)) s (the rest of this lane skipped) =="
        exit 1
      fi
      echo "== $stage $m: $((SECONDS - t0)) s =="
    done
  ) &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
echo "== stage $stage: $((SECONDS - t_stage)) s in total ($n_lanes lane(s)) =="
exit $rc
