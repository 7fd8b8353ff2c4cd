# Appends 0, 1, 2... one per line to the file named by argv[1], every 50 ms.
import sys
import time

i = 0
with open(sys.argv[1], "a", buffering=1) as f:
    while True:
        f.write(f"{i}\n")
        f.flush()
        i += 1
        time.sleep(0.05)
