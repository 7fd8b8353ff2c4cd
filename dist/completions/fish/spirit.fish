# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_spirit_global_optspecs
    string join \n v/verbose q/quiet log-file= h/help V/version
end

function __fish_spirit_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_spirit_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_spirit_using_subcommand
    set -l cmd (__fish_spirit_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c spirit -n "__fish_spirit_needs_command" -l log-file -d 'Also write the full debug log to this file (attach it to a bug report)' -r -F
complete -c spirit -n "__fish_spirit_needs_command" -s v -l verbose -d 'More log on stderr: -v info, -vv debug, -vvv trace'
complete -c spirit -n "__fish_spirit_needs_command" -s q -l quiet -d 'Only errors on stderr'
complete -c spirit -n "__fish_spirit_needs_command" -s h -l help -d 'Print help'
complete -c spirit -n "__fish_spirit_needs_command" -s V -l version -d 'Print version'
complete -c spirit -n "__fish_spirit_needs_command" -f -a "dump" -d 'Freeze a process, write it into an image, then end it (or let it run on)'
complete -c spirit -n "__fish_spirit_needs_command" -f -a "restore" -d 'Bring a process back from an image'
complete -c spirit -n "__fish_spirit_needs_command" -f -a "manifest" -d 'Print this host\'s manifest of PATHs: `BLAKE3 PATH` a line, for `spirit dump --embed-files=missing-from:MANIFEST` on the source host'
complete -c spirit -n "__fish_spirit_needs_command" -f -a "show" -d 'Print everything in an image'
complete -c spirit -n "__fish_spirit_needs_command" -f -a "check" -d 'Check that this host\'s kernel offers what spirit needs'
complete -c spirit -n "__fish_spirit_needs_command" -f -a "plugins" -d 'List the plugins: built-in ones and external ones found by their manifests'
complete -c spirit -n "__fish_spirit_needs_command" -f -a "jobs" -d 'List spiritd\'s jobs'
complete -c spirit -n "__fish_spirit_needs_command" -f -a "peers" -d 'List the peers spiritd trusts'
complete -c spirit -n "__fish_spirit_needs_command" -f -a "migrate" -d 'Move a running process to a peer host through spiritd; it ends here only once it runs there, and resumes here if anything fails before that'
complete -c spirit -n "__fish_spirit_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c spirit -n "__fish_spirit_using_subcommand dump" -s o -l output -d 'Image file to write, or - for standard output' -r -F
complete -c spirit -n "__fish_spirit_using_subcommand dump" -l skip-fd -d 'Leave descriptor N out of the image (repeatable)' -r
complete -c spirit -n "__fish_spirit_using_subcommand dump" -l workers -d 'Page copy threads' -r
complete -c spirit -n "__fish_spirit_using_subcommand dump" -l progress-fd -d 'Write `progress DONE TOTAL` lines and a final `result JSON` line to this fd' -r
complete -c spirit -n "__fish_spirit_using_subcommand dump" -l verdict-fd -d 'After the image is out, wait for one byte on this fd: `k` ends the process, anything else or end-of-file resumes it (migration)' -r
complete -c spirit -n "__fish_spirit_using_subcommand dump" -l ext-unix-reconnect -d 'A unix socket connected to a peer outside the tree is connected again to the peer\'s name at restore (safe for datagram logging sockets such as /dev/log). Without a value: every such socket; else the peer\'s path, `@NAME` for an abstract name, or `socket:[INODE]` of our socket (repeatable)' -r
complete -c spirit -n "__fish_spirit_using_subcommand dump" -l ext-unix-inherit -d 'A unix socket connected outside the tree is recorded as external: the restorer must be given a socket for it (`restore --inherit-fd fd[N]:socket:[INODE]`). Same selectors as --ext-unix-reconnect' -r
complete -c spirit -n "__fish_spirit_using_subcommand dump" -l embed-files -d 'Carry the content of the files the tree needs (executable, libraries, mapped files) in the image, compressed, each content once: `all` (the default), or `missing-from:MANIFEST` for those whose hash the target\'s manifest (`spirit manifest PATH...` run there) does not list' -r
complete -c spirit -n "__fish_spirit_using_subcommand dump" -l log-file -d 'Also write the full debug log to this file (attach it to a bug report)' -r -F
complete -c spirit -n "__fish_spirit_using_subcommand dump" -l leave-running -d 'Let the process run on after the checkpoint instead of killing it'
complete -c spirit -n "__fish_spirit_using_subcommand dump" -l shell-job -d 'Accept descriptors on the terminal the process was started from (outside the tree); restore it with `spirit restore --shell-job` from a terminal'
complete -c spirit -n "__fish_spirit_using_subcommand dump" -l json -d 'Print the result as one JSON object on stdout (not with `-o -`)'
complete -c spirit -n "__fish_spirit_using_subcommand dump" -s v -l verbose -d 'More log on stderr: -v info, -vv debug, -vvv trace'
complete -c spirit -n "__fish_spirit_using_subcommand dump" -s q -l quiet -d 'Only errors on stderr'
complete -c spirit -n "__fish_spirit_using_subcommand dump" -s h -l help -d 'Print help'
complete -c spirit -n "__fish_spirit_using_subcommand restore" -l pidfile -d 'Write the restored pid to this file' -r -F
complete -c spirit -n "__fish_spirit_using_subcommand restore" -l workers -d 'Page write threads' -r
complete -c spirit -n "__fish_spirit_using_subcommand restore" -l inherit-fd -d 'fd[N]:KEY — our descriptor N stands for the resource outside the tree the image names KEY, as `spirit show` lists it: `socket:[4242]` for a unix socket dumped with --ext-unix-inherit, `/dev/pts/3` for a terminal. Repeatable' -r
complete -c spirit -n "__fish_spirit_using_subcommand restore" -l log-file -d 'Also write the full debug log to this file (attach it to a bug report)' -r -F
complete -c spirit -n "__fish_spirit_using_subcommand restore" -l detach -d 'Return once the process runs and print its pid, instead of waiting for it'
complete -c spirit -n "__fish_spirit_using_subcommand restore" -l new-pid -d 'Give the process fresh pid and tids instead of the original ones'
complete -c spirit -n "__fish_spirit_using_subcommand restore" -l pid-ns -d 'Restore into a new pid namespace (under a small init), so every process keeps its pid even where those pids are taken on this host'
complete -c spirit -n "__fish_spirit_using_subcommand restore" -l allow-changed-files -d 'Restore even if the executable, a mapped library or an open file changed since the checkpoint (the default refuses, naming the file)'
complete -c spirit -n "__fish_spirit_using_subcommand restore" -l shell-job -d 'Put the descriptors that were on the terminal the process was started from (dumped with --shell-job) on this terminal (our standard input), the process made the foreground job when it was one'
complete -c spirit -n "__fish_spirit_using_subcommand restore" -l own-exit-code -d 'Without --detach: exit 0 once the program has ended (its status goes to stderr and --json) instead of with the program\'s own status, so spirit\'s own exit codes cannot be mistaken for the program\'s'
complete -c spirit -n "__fish_spirit_using_subcommand restore" -l json -d 'Print the result as one JSON object on stdout: at once with --detach, else when the program ends (with its `exit_code` or `signal`)'
complete -c spirit -n "__fish_spirit_using_subcommand restore" -s v -l verbose -d 'More log on stderr: -v info, -vv debug, -vvv trace'
complete -c spirit -n "__fish_spirit_using_subcommand restore" -s q -l quiet -d 'Only errors on stderr'
complete -c spirit -n "__fish_spirit_using_subcommand restore" -s h -l help -d 'Print help'
complete -c spirit -n "__fish_spirit_using_subcommand manifest" -l log-file -d 'Also write the full debug log to this file (attach it to a bug report)' -r -F
complete -c spirit -n "__fish_spirit_using_subcommand manifest" -s v -l verbose -d 'More log on stderr: -v info, -vv debug, -vvv trace'
complete -c spirit -n "__fish_spirit_using_subcommand manifest" -s q -l quiet -d 'Only errors on stderr'
complete -c spirit -n "__fish_spirit_using_subcommand manifest" -s h -l help -d 'Print help'
complete -c spirit -n "__fish_spirit_using_subcommand show" -l log-file -d 'Also write the full debug log to this file (attach it to a bug report)' -r -F
complete -c spirit -n "__fish_spirit_using_subcommand show" -l json -d 'Machine-readable JSON instead of text'
complete -c spirit -n "__fish_spirit_using_subcommand show" -s v -l verbose -d 'More log on stderr: -v info, -vv debug, -vvv trace'
complete -c spirit -n "__fish_spirit_using_subcommand show" -s q -l quiet -d 'Only errors on stderr'
complete -c spirit -n "__fish_spirit_using_subcommand show" -s h -l help -d 'Print help'
complete -c spirit -n "__fish_spirit_using_subcommand check" -l log-file -d 'Also write the full debug log to this file (attach it to a bug report)' -r -F
complete -c spirit -n "__fish_spirit_using_subcommand check" -l json -d 'Machine-readable JSON instead of text'
complete -c spirit -n "__fish_spirit_using_subcommand check" -s v -l verbose -d 'More log on stderr: -v info, -vv debug, -vvv trace'
complete -c spirit -n "__fish_spirit_using_subcommand check" -s q -l quiet -d 'Only errors on stderr'
complete -c spirit -n "__fish_spirit_using_subcommand check" -s h -l help -d 'Print help'
complete -c spirit -n "__fish_spirit_using_subcommand plugins" -l log-file -d 'Also write the full debug log to this file (attach it to a bug report)' -r -F
complete -c spirit -n "__fish_spirit_using_subcommand plugins" -l json -d 'Machine-readable JSON instead of text'
complete -c spirit -n "__fish_spirit_using_subcommand plugins" -s v -l verbose -d 'More log on stderr: -v info, -vv debug, -vvv trace'
complete -c spirit -n "__fish_spirit_using_subcommand plugins" -s q -l quiet -d 'Only errors on stderr'
complete -c spirit -n "__fish_spirit_using_subcommand plugins" -s h -l help -d 'Print help'
complete -c spirit -n "__fish_spirit_using_subcommand jobs" -l bus -d 'The bus spiritd serves on: system, session, or a D-Bus address' -r
complete -c spirit -n "__fish_spirit_using_subcommand jobs" -l log-file -d 'Also write the full debug log to this file (attach it to a bug report)' -r -F
complete -c spirit -n "__fish_spirit_using_subcommand jobs" -l json -d 'Machine-readable JSON instead of text'
complete -c spirit -n "__fish_spirit_using_subcommand jobs" -s v -l verbose -d 'More log on stderr: -v info, -vv debug, -vvv trace'
complete -c spirit -n "__fish_spirit_using_subcommand jobs" -s q -l quiet -d 'Only errors on stderr'
complete -c spirit -n "__fish_spirit_using_subcommand jobs" -s h -l help -d 'Print help'
complete -c spirit -n "__fish_spirit_using_subcommand peers" -l bus -d 'The bus spiritd serves on: system, session, or a D-Bus address' -r
complete -c spirit -n "__fish_spirit_using_subcommand peers" -l log-file -d 'Also write the full debug log to this file (attach it to a bug report)' -r -F
complete -c spirit -n "__fish_spirit_using_subcommand peers" -l json -d 'Machine-readable JSON instead of text'
complete -c spirit -n "__fish_spirit_using_subcommand peers" -s v -l verbose -d 'More log on stderr: -v info, -vv debug, -vvv trace'
complete -c spirit -n "__fish_spirit_using_subcommand peers" -s q -l quiet -d 'Only errors on stderr'
complete -c spirit -n "__fish_spirit_using_subcommand peers" -s h -l help -d 'Print help'
complete -c spirit -n "__fish_spirit_using_subcommand migrate" -l to -d 'The peer\'s name (see `spirit peers`)' -r
complete -c spirit -n "__fish_spirit_using_subcommand migrate" -l bus -d 'The bus spiritd serves on: system, session, or a D-Bus address' -r
complete -c spirit -n "__fish_spirit_using_subcommand migrate" -l log-file -d 'Also write the full debug log to this file (attach it to a bug report)' -r -F
complete -c spirit -n "__fish_spirit_using_subcommand migrate" -l keep-source -d 'Leave the process running here too (a copy)'
complete -c spirit -n "__fish_spirit_using_subcommand migrate" -l pid-ns -d 'Restore on the peer in a new pid namespace, keeping the pids'
complete -c spirit -n "__fish_spirit_using_subcommand migrate" -l json -d 'Print the result as one JSON object on stdout (instead of the new pid)'
complete -c spirit -n "__fish_spirit_using_subcommand migrate" -s v -l verbose -d 'More log on stderr: -v info, -vv debug, -vvv trace'
complete -c spirit -n "__fish_spirit_using_subcommand migrate" -s q -l quiet -d 'Only errors on stderr'
complete -c spirit -n "__fish_spirit_using_subcommand migrate" -s h -l help -d 'Print help'
complete -c spirit -n "__fish_spirit_using_subcommand help; and not __fish_seen_subcommand_from dump restore manifest show check plugins jobs peers migrate help" -f -a "dump" -d 'Freeze a process, write it into an image, then end it (or let it run on)'
complete -c spirit -n "__fish_spirit_using_subcommand help; and not __fish_seen_subcommand_from dump restore manifest show check plugins jobs peers migrate help" -f -a "restore" -d 'Bring a process back from an image'
complete -c spirit -n "__fish_spirit_using_subcommand help; and not __fish_seen_subcommand_from dump restore manifest show check plugins jobs peers migrate help" -f -a "manifest" -d 'Print this host\'s manifest of PATHs: `BLAKE3 PATH` a line, for `spirit dump --embed-files=missing-from:MANIFEST` on the source host'
complete -c spirit -n "__fish_spirit_using_subcommand help; and not __fish_seen_subcommand_from dump restore manifest show check plugins jobs peers migrate help" -f -a "show" -d 'Print everything in an image'
complete -c spirit -n "__fish_spirit_using_subcommand help; and not __fish_seen_subcommand_from dump restore manifest show check plugins jobs peers migrate help" -f -a "check" -d 'Check that this host\'s kernel offers what spirit needs'
complete -c spirit -n "__fish_spirit_using_subcommand help; and not __fish_seen_subcommand_from dump restore manifest show check plugins jobs peers migrate help" -f -a "plugins" -d 'List the plugins: built-in ones and external ones found by their manifests'
complete -c spirit -n "__fish_spirit_using_subcommand help; and not __fish_seen_subcommand_from dump restore manifest show check plugins jobs peers migrate help" -f -a "jobs" -d 'List spiritd\'s jobs'
complete -c spirit -n "__fish_spirit_using_subcommand help; and not __fish_seen_subcommand_from dump restore manifest show check plugins jobs peers migrate help" -f -a "peers" -d 'List the peers spiritd trusts'
complete -c spirit -n "__fish_spirit_using_subcommand help; and not __fish_seen_subcommand_from dump restore manifest show check plugins jobs peers migrate help" -f -a "migrate" -d 'Move a running process to a peer host through spiritd; it ends here only once it runs there, and resumes here if anything fails before that'
complete -c spirit -n "__fish_spirit_using_subcommand help; and not __fish_seen_subcommand_from dump restore manifest show check plugins jobs peers migrate help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
