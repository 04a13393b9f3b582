# Timing tests measure how fast, not whether: on a loaded machine they measure
# the machine, so the default suite leaves them out (`mix test --only timing`
# runs them, on a quiet machine). Every other test asserts what happened,
# never how long it took. Soak and load suites (test/soak) run only with
# `make soak`.
#
# A message a test waits for with assert_receive must come: it is waited for
# long enough that a loaded machine cannot make it late, and never timed.
#
# Tests tagged :root give a file to another user, which only root can do:
# elsewhere they are left out (and counted as excluded).
root? = match?({"0\n", 0}, System.cmd("id", ["-u"]))
ExUnit.start(exclude: [:timing, :soak] ++ if(root?, do: [], else: [:root]), assert_receive_timeout: 30_000)
