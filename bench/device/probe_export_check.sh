#!/bin/bash
# Stops 22-23: why `l2l export --check` dies answering with the f16 GGUF on CUDA. Build llama.cpp (as check_cuda.sh)
# (a tiny run's models written meanwhile), run the tiny run, export its GGUFs, then load them (and two random GGUFs) with several settings, each in a
# process of its own with llama.cpp's log on (bench/device/gguf_load_probe.py); last, export --check itself.
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONFAULTHANDLER=1
R=$PWD; OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/ll /tmp/scr-tiny
tar xzf .llsrc/llsrc.tgz -C /tmp/ll
( export PYTHONPATH=$R/.site:$R; timeout 200 python3 bench/gpu.py --tiny --parts none --scratch /tmp/scr-tiny > /dev/null 2>&1 ) &
T0=$(date +%s); timeout 330 bash bench/device/build_llama.sh > /tmp/llbuild.log 2>&1; echo "build rc $? in $(( $(date +%s) - T0 )) s" | tee "$OUT/probe.txt"
wait
export PYTHONPATH=/tmp/ll/llama_cpp_python-0.3.36:$R/.site:$R L2L_HOME=/tmp/scr/home L2L_MODEL_CACHE=/tmp/scr/models
timeout 50 python3 bench/gpu.py --tiny --parts run --scratch /tmp/scr-tiny > "$OUT/run-tiny.txt" 2>&1; echo "tiny run exit $?" | tee -a "$OUT/probe.txt"
timeout 40 python3 -m l2l_tui.cli export 1 --store /tmp/scr-tiny/run/l2l.db --out /tmp/exp > /dev/null 2>&1; echo "export exit $?" | tee -a "$OUT/probe.txt"
timeout 110 python3 bench/device/gguf_load_probe.py "$OUT" /tmp/exp/run-1-f16.gguf 2>&1 | tee -a "$OUT/probe.txt"
timeout 40 python3 -m l2l_tui.cli export 1 --store /tmp/scr-tiny/run/l2l.db --out /tmp/exp2 --check > "$OUT/export.txt" 2> "$OUT/export.err"
echo "export --check exit $?" | tee -a "$OUT/probe.txt"; tail -4 "$OUT/export.txt"
rm -f "$OUT"/*.gguf
