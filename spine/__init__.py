"""Spine anatomy shared by every stage: VerSe label ids, their names and order, neighbours and
the Genant grade of a height loss. Nothing here reads files."""
