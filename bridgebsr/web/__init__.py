"""The partners' door: a small Starlette app that people reach through the personal signed
links their notices carry (DESIGN.md section 8)."""
