#!/bin/bash
# The GPU checks of bench/device/README.md in one device call (about 6 minutes, 4 of them the llama.cpp build).
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONFAULTHANDLER=1
R=$PWD
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/ll /tmp/scr
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/summary.txt" 2>&1
tar xzf .llsrc/llsrc.tgz -C /tmp/ll
( T0=$(date +%s); timeout 360 bash bench/device/build_llama.sh > /tmp/llbuild.log 2>&1
  echo "llama.cpp CUDA build rc $? in $(( $(date +%s) - T0 )) s" > /tmp/llbuild.rc ) &
export PYTHONPATH=$R/.site:$R
timeout 200 python3 bench/gpu.py --parts none --scratch /tmp/scr > /dev/null 2>&1 &
timeout 200 python3 bench/gpu.py --tiny --parts none --scratch /tmp/scr-tiny > /dev/null 2>&1 &
python3 -c "import sys; sys.path[:0]=['bench']; import gpu; from pathlib import Path; gpu.write_teacher(gpu.TEACHER, Path('/tmp/scr/teacher.gguf'))"
wait; cat /tmp/llbuild.rc >> "$OUT/summary.txt"; tail -c 4000 /tmp/llbuild.log > "$OUT/llbuild_tail.log"
export PYTHONPATH=/tmp/ll/llama_cpp_python-0.3.36:$R/.site:$R L2L_HOME=/tmp/scr/home L2L_MODEL_CACHE=/tmp/scr/models
for mode in own-process in-process; do
  timeout 60 python3 bench/device/llama_after_torch.py $mode /tmp/scr/teacher.gguf > "$OUT/$mode.txt" 2>&1
  echo "llama.cpp after torch, $mode: exit $?" >> "$OUT/summary.txt"
done
timeout 200 python3 bench/gpu.py --parts run --scratch /tmp/scr --json "$OUT/run.json" > "$OUT/run.txt" 2> "$OUT/run.err"
echo "whole run (real shapes): exit $?" >> "$OUT/summary.txt"
timeout 120 python3 bench/gpu.py --tiny --parts run --scratch /tmp/scr-tiny > "$OUT/run-tiny.txt" 2> "$OUT/run-tiny.err"
echo "whole run (tiny): exit $?" >> "$OUT/summary.txt"
timeout 60 python3 -m l2l_tui.cli doctor > "$OUT/doctor.txt" 2> "$OUT/doctor.err"
echo "doctor: exit $?" >> "$OUT/summary.txt"
timeout 200 python3 -m l2l_tui.cli export 1 --store /tmp/scr-tiny/run/l2l.db --out /tmp/exp --check > "$OUT/export.txt" 2> "$OUT/export.err"
echo "export --check (tiny run): exit $?" >> "$OUT/summary.txt"
cat "$OUT/summary.txt"; grep -h "LLM2LLM run" "$OUT/run.txt" "$OUT/run-tiny.txt"; grep -v "^llama_\|^load\|^print_info" "$OUT"/*-process.txt | tail -12
head -12 "$OUT/export.txt"; grep -v "^llama_\|^load\|^print_info" "$OUT/export.err" | tail -5
# The device tool returns at most 8 files from $OUT: keep the summary and the export's stderr, bundle the rest.
( cd "$OUT" && tar czf logs.tgz --exclude=logs.tgz --exclude=summary.txt --exclude=export.err . \
  && find . -maxdepth 1 -type f ! -name logs.tgz ! -name summary.txt ! -name export.err -delete )
