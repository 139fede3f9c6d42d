"""The operating system: autostart backends, directory watches, resume signals, single instance,
browser, clipboard, frozen-binary quirks.
"""
