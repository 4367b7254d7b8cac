# Sourced by gpu_check.sh and gpu_train.sh.
#
#   tee_log FILE [PATH ...]
#
# From here on everything the script prints also goes to FILE. At exit the PATHs are removed,
# the log is flushed (the tee process is waited for) and the script's exit code is kept.
tee_log() {
  TEE_LOG_REMOVE=("${@:2}")
  exec > >(tee "$1") 2>&1
  TEE_LOG_PID=$!
  trap _tee_log_finish EXIT
}

_tee_log_finish() {
  local code=$?
  rm -rf "${TEE_LOG_REMOVE[@]}"
  exec 1>&- 2>&-
  wait "$TEE_LOG_PID" 2>/dev/null
  exit "$code"
}
