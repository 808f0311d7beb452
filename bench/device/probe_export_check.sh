#!/bin/bash
# Stop 22: why `l2l export --check` dies answering with the f16 GGUF on CUDA. Build llama.cpp (as check_cuda.sh), probe
# tiny GGUFs with offload variants, then the tiny run and its export --check with the dying process's stderr kept.
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONFAULTHANDLER=1
R=$PWD; OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/ll /tmp/scr-tiny
tar xzf .llsrc/llsrc.tgz -C /tmp/ll
( export PYTHONPATH=$R/.site:$R; timeout 200 python3 bench/gpu.py --tiny --parts none --scratch /tmp/scr-tiny > /dev/null 2>&1 ) &
T0=$(date +%s); timeout 330 bash bench/device/build_llama.sh > /tmp/llbuild.log 2>&1; echo "build rc $? in $(( $(date +%s) - T0 )) s" | tee "$OUT/probe.txt"
wait
export PYTHONPATH=/tmp/ll/llama_cpp_python-0.3.36:$R/.site:$R L2L_HOME=/tmp/scr/home L2L_MODEL_CACHE=/tmp/scr/models
timeout 90 python3 bench/device/gguf_answer_probe.py /tmp/probe 2>&1 | tee -a "$OUT/probe.txt"
timeout 60 python3 bench/gpu.py --tiny --parts run --scratch /tmp/scr-tiny > "$OUT/run-tiny.txt" 2>&1; echo "tiny run exit $?" | tee -a "$OUT/probe.txt"
timeout 90 python3 -m l2l_tui.cli export 1 --store /tmp/scr-tiny/run/l2l.db --out /tmp/exp --check > "$OUT/export.txt" 2> "$OUT/export.err"
echo "export --check exit $?" | tee -a "$OUT/probe.txt"; grep -v "^llama_model_loader\|^\[ \|^print_info\|^load" "$OUT/export.err" | tail -25
