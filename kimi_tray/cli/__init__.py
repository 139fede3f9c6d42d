"""The command line: argparse front, one exit-code table, and the faces that need no tray (daemon,
login, doctor, uninstall).
"""
