fn main() {
    println!("cargo:rerun-if-changed=schema/mqueue.capnp");
    capnpc::CompilerCommand::new()
        .src_prefix("schema")
        .file("schema/mqueue.capnp")
        .run()
        .expect("compiling schema/mqueue.capnp (is the `capnp` tool installed? apt-get install capnproto)");
}
