complete -c spiritd -l bus -d 'The bus to serve on: system, session, or a D-Bus address (unix:path=...)' -r
complete -c spiritd -l config -d 'Configuration file (TOML; see spiritd.toml(5)). Without it, defaults apply' -r -F
complete -c spiritd -l state-dir -d 'State directory (identity key); overrides the configuration\'s state_dir' -r -F
complete -c spiritd -l worker -d 'The spirit binary that runs each job; overrides the configuration\'s worker' -r -F
complete -c spiritd -l show-key -d 'Print this daemon\'s identity public key (creating it on first use) and exit'
complete -c spiritd -s h -l help -d 'Print help'
complete -c spiritd -s V -l version -d 'Print version'
