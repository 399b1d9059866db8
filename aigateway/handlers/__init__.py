"""HTTP handlers: thin, each calls one function elsewhere. Route tables sit at the bottom."""
