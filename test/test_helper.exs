# Timing tests measure how fast, not whether: on a loaded machine they measure
# the machine, so the default suite leaves them out (`mix test --only timing`
# runs them, on a quiet machine). Every other test asserts what happened,
# never how long it took. Soak and load suites (test/soak) run only with
# `make soak`.
#
# A message a test waits for with assert_receive must come: it is waited for
# long enough that a loaded machine cannot make it late, and never timed.
ExUnit.start(exclude: [:timing, :soak], assert_receive_timeout: 30_000)
