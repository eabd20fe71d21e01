"""fuzz_target: one parser under libFuzzer, and the same code as a seed-corpus replay test.

fuzz_target(name = "problem", srcs = ["problem_fuzzer.cc"], deps = [...], max_len = 4096) makes

  :problem_fuzzer       the libFuzzer binary under --config=fuzz (clang-14, ASan+UBSan); under
                        the normal gcc build a plain program that runs the inputs it is given
                        (to reproduce a finding with gdb). Tagged manual: tests/fuzz/run builds
                        it with the fuzz config.
  :problem_fuzzer_test  a test that replays every seed in corpus/problem/ and checks each seed's
                        verdict against its name (ok-* accepted, bad-* rejected), so
                        `bazel test //...` runs every parser on every seed.

Both link the target's srcs, which define acmevault::fuzz::FuzzOne (fuzz_target.h). `max_len`
is the longest input libFuzzer makes for this target (its -max_len unless the caller gives one);
the replay test fails for a seed longer than that, since libFuzzer would silently truncate it.
"""

def fuzz_target(name, srcs, deps, max_len, data = []):
    defines = ["ACMEVAULT_FUZZ_MAX_LEN=%d" % max_len]
    deps = deps + [":fuzz_target"]
    native.cc_binary(
        name = name + "_fuzzer",
        testonly = True,
        srcs = srcs + select({
            ":fuzzing": ["libfuzzer_main.cc"],
            "//conditions:default": ["replay_main.cc"],
        }),
        data = data,
        deps = deps,
        linkopts = select({
            ":fuzzing": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
        local_defines = defines,
        tags = ["manual"],
    )
    native.cc_test(
        name = name + "_fuzzer_test",
        size = "small",
        srcs = srcs + ["replay_main.cc"],
        args = ["tests/fuzz/corpus/" + name],
        data = data + native.glob(["corpus/%s/*" % name]),
        deps = deps,
        local_defines = defines,
    )
