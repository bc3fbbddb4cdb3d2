# Prints, from a 'go test -v' log, every line that a failing test wrote,
# subtests included: the tail of a long log loses the failure's detail.
# Usage: awk -f failed-tests.awk LOG LOG
function top(name) { sub(/\/.*/, "", name); return name }
FNR == NR {
  if (match($0, /^ *--- FAIL: [^ ]+/)) {
    f = substr($0, RSTART, RLENGTH); sub(/^ *--- FAIL: /, "", f); failed[top(f)] = 1
  }
  next
}
/^=== (RUN|CONT|PAUSE|NAME) / { cur = top($3) }
/^(ok|FAIL|PASS)/ { cur = "" }
(cur in failed) || /--- FAIL|^panic:/ {
  if (++n[cur] <= 800) print
}
