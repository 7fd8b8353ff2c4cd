@0xbc55f496ef03d82c;

# The section of one process for one external plugin: what spirit itself keeps of each
# descriptor the plugin took. The plugin's own bytes are opaque to spirit.

struct ExternalSection {
  fds @0 :List(FdRecord);
}

struct FdRecord {
  fd @0 :Int32;          # its number in the process
  flags @1 :UInt32;      # open flags at checkpoint (fdinfo), O_CLOEXEC included
  cloexec @2 :Bool;
  fsMagic @3 :Int64;     # statfs f_type of the original: the restored one must match
  fileType @4 :UInt32;   # st_mode & S_IFMT of the original: the restored one must match
  target @5 :Text;       # the link text at checkpoint
  data @6 :Data;         # the plugin's bytes (Dump's answer); empty when shared
  # The same object as an earlier record of the tree (pid, fd), which the plugin
  # dumped: this one is not handed to the plugin. sameDescription: one open file
  # description (kcmp), shared at restore; else another description of the same
  # object, reopened through /proc with this record's flags.
  shared @7 :Bool;
  sharePid @8 :Int32;
  shareFd @9 :Int32;
  sameDescription @10 :Bool;
  pos @11 :UInt64;       # the file position (for a reopened description)
}
