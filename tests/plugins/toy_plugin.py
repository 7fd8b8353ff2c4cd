#!/usr/bin/python3
"""A toy spirit plugin written without any of spirit's code: Python, the distribution's
GLib D-Bus bindings (GDBus through python3-gi) and the interface XML spirit ships
(busd/org.spirit.Plugin1.xml, read from $TOY_XML). It proves org.spirit.Plugin1 is
language-neutral.

It claims regular files under $TOY_PREFIX. Dump keeps the file's path, content, the
descriptor's offset and open flags; Restore opens the file again at that offset; Show
renders a section.

$TOY_MODE makes it misbehave, for spirit's failure tests: exit_dump (dies in Dump),
hang_dump (never answers Dump), bad_dump (answers Dump with a string, not bytes),
bad_restore (answers Restore with a pipe, not a file), exit_restore (dies in Restore),
hang_restore (never answers Restore).
"""
import base64
import json
import os
import time

import gi

gi.require_version("Gio", "2.0")
from gi.repository import Gio, GLib  # noqa: E402

MODE = os.environ.get("TOY_MODE", "ok")
PREFIX = os.environ["TOY_PREFIX"]
REFUSED = "org.spirit.Plugin1.Error.Refused"

xml = open(os.environ["TOY_XML"]).read()
if MODE == "bad_dump":
    xml = xml.replace('name="section" type="ay" direction="out"', 'name="section" type="s" direction="out"')
IFACE = Gio.DBusNodeInfo.new_for_xml(xml).lookup_interface("org.spirit.Plugin1")


def dump(inv, params):
    _pid, _fd, handle, facts = params.unpack()
    fd = inv.get_message().get_unix_fd_list().get(handle)
    if MODE == "exit_dump":
        os._exit(3)
    if MODE == "hang_dump":
        time.sleep(3600)
    try:
        offset = os.lseek(fd, 0, os.SEEK_CUR)
        content = os.pread(fd, os.fstat(fd).st_size, 0)
    finally:
        os.close(fd)
    if MODE == "bad_dump":
        return inv.return_value(GLib.Variant("(s)", ("not a section",)))
    section = json.dumps({
        "path": facts["target"],
        "offset": offset,
        "flags": facts["flags"],
        "content": base64.b64encode(content).decode(),
    }).encode()
    inv.return_value(GLib.Variant("(ay)", (section,)))


def restore(inv, params):
    section, _facts = params.unpack()
    d = json.loads(bytes(section))
    if MODE == "exit_restore":
        os._exit(3)
    if MODE == "hang_restore":
        time.sleep(3600)
    if MODE == "bad_restore":
        fd, w = os.pipe()
        os.close(w)
    else:
        fd = os.open(d["path"], (d["flags"] & os.O_ACCMODE) | os.O_CLOEXEC)
        os.lseek(fd, d["offset"], os.SEEK_SET)
    fds = Gio.UnixFDList.new()
    index = fds.append(fd)
    os.close(fd)
    inv.return_value_with_unix_fd_list(GLib.Variant("(h)", (index,)), fds)


def show(inv, params):
    (section,) = params.unpack()
    d = json.loads(bytes(section))
    text = json.dumps({"path": d["path"], "offset": d["offset"],
                       "size": len(base64.b64decode(d["content"]))})
    inv.return_value(GLib.Variant("(s)", (text,)))


def on_call(_conn, _sender, _path, _iface, method, params, inv):
    try:
        if method == "Describe":
            claims = {"path_prefix": GLib.Variant("as", [PREFIX])}
            inv.return_value(GLib.Variant("(sua{sv})", ("toy", 1, claims)))
        elif method == "Dump":
            dump(inv, params)
        elif method == "Restore":
            restore(inv, params)
        elif method == "Show":
            show(inv, params)
    except Exception as e:  # a refusal spirit shows with the pid and fd
        inv.return_dbus_error(REFUSED, f"toy: {e}")


sock = Gio.Socket.new_from_fd(int(os.environ["SPIRIT_PLUGIN_FD"]))
conn = Gio.DBusConnection.new_sync(
    sock.connection_factory_create_connection(), None,
    Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
    | Gio.DBusConnectionFlags.DELAY_MESSAGE_PROCESSING, None, None)
# Export the object before the first message is read: spirit calls Describe at once.
conn.register_object("/org/spirit/Plugin1", IFACE, on_call, None, None)
conn.start_message_processing()
loop = GLib.MainLoop()
conn.connect("closed", lambda *_: loop.quit())
loop.run()
