#!/usr/bin/env bash
# Run trigkit stages over models in parallel lanes: the models of a lane run one after the
# other (a teacher before its student), the lanes side by side, each training on one CPU thread
# when there are several lanes. STAGES is one stage or several ("train export rtl sim synth"):
# each lane then runs its whole chain, stage after stage, without waiting for the other lanes
# between stages. Prints each model's and each lane's wall time; exits non-zero when any model
# failed (the rest of that lane is skipped, the other lanes still finish).
#
# usage: lanes.sh TRIGKIT "STAGES" "EXTRA ARGS OF THE FIRST STAGE" "LANE 1 MODELS" ["LANE 2" ...]
set -euo pipefail
trigkit=$1 stages=$2 extra=$3
shift 3
n_lanes=$#
t_all=$SECONDS
first_stage=${stages%% *}

stage_args() {  # the options a stage gets when several lanes share the cores
  if [ "$n_lanes" -gt 1 ]; then
    case $1 in
      train) echo "--threads 1 --no-progress" ;;
      export) echo "--no-progress" ;;
    esac
  fi
  if [ "$1" = "$first_stage" ]; then echo "$extra"; fi
}

pids=()
for lane in "$@"; do
  (
    for stage in $stages; do
      for m in $lane; do
        t0=$SECONDS
        echo "== $stage $m =="
        # shellcheck disable=SC2046  # the stage's options are several words
        if ! "$trigkit" "$stage" --model "$m" $(stage_args "$stage") 2>&1 \
            | sed -u "s/^/[$m] /"; then
          echo "== $stage $m: FAILED after $((SECONDS - t0)) s (the rest of this lane skipped) =="
          exit 1
        fi
        echo "== $stage $m: $((SECONDS - t0)) s =="
      done
    done
    echo "== lane ${lane// /+}: $((SECONDS - t_all)) s =="
  ) &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
echo "== $stages: $((SECONDS - t_all)) s in total ($n_lanes lane(s)) =="
exit $rc
