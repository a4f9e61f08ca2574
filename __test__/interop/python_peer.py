"""The Python side of the interop test: multiprocessing.shared_memory on a shmkit segment.

  python3 python_peer.py read NAME OFFSET LENGTH        prints the bytes as hex
  python3 python_peer.py write NAME OFFSET HEX          writes bytes
  python3 python_peer.py create NAME SIZE OFFSET HEX    creates a segment and writes bytes

Python's resource tracker would unlink segments it did not create when this process exits,
so every segment is unregistered from it: ownership stays with whoever created the name.
"""

import sys
from multiprocessing import resource_tracker, shared_memory


def attach(name, create=False, size=0):
    shm = shared_memory.SharedMemory(name=name, create=create, size=size)
    # Python 3.13 has track=False; older versions register every segment with the tracker.
    resource_tracker.unregister(shm._name, "shared_memory")  # noqa: SLF001
    return shm


def main():
    command, name = sys.argv[1], sys.argv[2]
    if command == "read":
        offset, length = int(sys.argv[3]), int(sys.argv[4])
        shm = attach(name)
        print(bytes(shm.buf[offset : offset + length]).hex())
        print(shm.size)
    elif command == "write":
        offset, data = int(sys.argv[3]), bytes.fromhex(sys.argv[4])
        shm = attach(name)
        shm.buf[offset : offset + len(data)] = data
    elif command == "create":
        size, offset, data = int(sys.argv[3]), int(sys.argv[4]), bytes.fromhex(sys.argv[5])
        shm = attach(name, create=True, size=size)
        shm.buf[offset : offset + len(data)] = data
    shm.close()


if __name__ == "__main__":
    main()
