# Ports for the scripts, without guessing free ones: a program that can report the port it got
# binds port 0 and the script reads the line where it says which; a program that cannot
# (nginx, Docker's published ports, ...) gets a random port below the kernel's ephemeral range
# (32768-60999), which no outgoing connection takes, and the script tries another when the
# bind fails. Source it (scripts/lib/farm.sh and scripts/lib/nginx.sh do).

# low_port [COUNT]: a random port P in 10000-32000 such that P+COUNT is in it too (COUNT 0 by
# default): for a program that cannot report its port, or a base whose P+1..P+COUNT are used.
low_port() {
    local count=${1:-0}
    echo $((10000 + RANDOM % (22001 - count)))
}

# first_line FILE ERE: prints the first complete (newline-terminated) line of FILE that matches
# ERE; fails when there is none (yet).
first_line() {
    local line
    [[ -r $1 ]] || return 1
    # `read` fails on a last line without its newline: a line still being written is skipped.
    while IFS= read -r line; do
        if [[ $line =~ $2 ]]; then
            printf '%s\n' "$line"
            return 0
        fi
    done <"$1"
    return 1
}

# wait_line FILE ERE PID SECONDS WHAT: waits, SECONDS at most and while PID lives, for a line
# of FILE that matches ERE, and prints it; else says so on stderr, naming WHAT, with FILE.
wait_line() {
    local file=$1 pattern=$2 pid=$3 seconds=$4 what=$5 i
    for ((i = 0; i < seconds * 10; i++)); do
        first_line "$file" "$pattern" && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            first_line "$file" "$pattern" && return 0
            echo "$what exited before printing a line matching '$pattern':" >&2
            cat "$file" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "$what printed no line matching '$pattern' within $seconds s:" >&2
    cat "$file" >&2
    return 1
}

# first_url TEXT: the first whitespace-separated word of TEXT that starts with http.
first_url() {
    local word words
    read -ra words <<<"$1"
    for word in "${words[@]}"; do
        if [[ $word == http* ]]; then
            echo "$word"
            return 0
        fi
    done
    return 1
}

# address_after TEXT MARK: the word after MARK in TEXT, such as the address in
# "farm node: listening on 127.0.0.1:PORT" after "listening on ".
address_after() {
    local rest=${1#*"$2"}
    [[ $rest != "$1" ]] || return 1
    rest=${rest%%[[:space:]]*}
    [[ -n $rest ]] || return 1
    echo "$rest"
}
