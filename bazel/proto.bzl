"""Compiles .proto files to C++ messages (and gRPC stubs) with the system protoc.

Debian ships protoc 3.21 and grpc_cpp_plugin 1.51, matching the libraries in @system, so the
generated code always fits the headers it is compiled against. Import paths are relative to the
package that calls the macro: in //proto, `acmevault/v1/x.proto` is imported as written and its
header is included as "acmevault/v1/x.pb.h".
"""

def cc_proto_grpc_library(name, srcs, proto_deps = [], deps = [], grpc = False, visibility = None, testonly = False):
    """A cc_library `name` holding the generated code of `srcs`.

    Args:
      name: target name.
      srcs: .proto files of this package.
      proto_deps: other .proto files (labels) that `srcs` import; they are made visible to protoc.
      deps: cc_library targets generated from `proto_deps`.
      grpc: also generate gRPC service stubs (*.grpc.pb.{h,cc}).
      visibility: as for any rule.
      testonly: as for any rule.
    """
    package = native.package_name()
    outs_h, outs_cc = [], []
    for src in srcs:
        if not src.endswith(".proto"):
            fail("%s: %s is not a .proto file" % (name, src))
        base = src[:-len(".proto")]
        outs_h.append(base + ".pb.h")
        outs_cc.append(base + ".pb.cc")
        if grpc:
            outs_h.append(base + ".grpc.pb.h")
            outs_cc.append(base + ".grpc.pb.cc")

    plugin = ""
    if grpc:
        plugin = " --plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin --grpc_out=$(RULEDIR)"
    native.genrule(
        name = name + "_codegen",
        srcs = srcs + proto_deps,
        outs = outs_h + outs_cc,
        cmd = ("/usr/bin/protoc -I{pkg} -I/usr/include --cpp_out=$(RULEDIR){plugin} {files}").format(
            pkg = package or ".",
            plugin = plugin,
            files = " ".join(["$(location %s)" % s for s in srcs]),
        ),
        message = "protoc " + name,
        visibility = ["//visibility:private"],
        testonly = testonly,
    )
    native.cc_library(
        name = name,
        srcs = outs_cc,
        hdrs = outs_h,
        includes = ["."],
        deps = deps + ["@system//:protobuf"] + (["@system//:grpc++"] if grpc else []),
        visibility = visibility,
        testonly = testonly,
    )
