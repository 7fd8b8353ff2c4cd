fn main() {
    println!("cargo:rerun-if-changed=schema/core.capnp");
    capnpc::CompilerCommand::new()
        .src_prefix("schema")
        .file("schema/core.capnp")
        .run()
        .expect("compiling schema/core.capnp (is the `capnp` tool installed? apt-get install capnproto)");
}
