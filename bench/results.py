"""Where every bench script reports: print a block and append it to bench/RESULTS.md."""
import os

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")


def record(text):
    print(text)
    with open(RESULTS, "a") as f:
        f.write(text)
