# Sourced by the benches: model_ops_of STATS -> the PFS model's metadata operation count in its
# --model-stats file. The model rewrites its counts every 200 ms and a loaded machine can delay
# that, so it reads until two readings 0.3 s apart agree (the job being counted has finished;
# at most about 6 s). Needs $py (the Python that reads the JSON).
model_ops_of() {
    local a b i
    a=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["metadata_ops"])' "$1")
    for ((i = 0; i < 20; i++)); do
        sleep 0.3
        b=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["metadata_ops"])' "$1")
        [[ $a == "$b" ]] && break
        a=$b
    done
    printf '%s\n' "$b"
}
