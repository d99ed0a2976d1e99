"""Plain handler functions, one module per spec tag; `operationId` is the function name."""
