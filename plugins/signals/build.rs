fn main() {
    println!("cargo:rerun-if-changed=schema/signals.capnp");
    capnpc::CompilerCommand::new()
        .src_prefix("schema")
        .file("schema/signals.capnp")
        .run()
        .expect("compiling schema/signals.capnp (is the `capnp` tool installed? apt-get install capnproto)");
}
