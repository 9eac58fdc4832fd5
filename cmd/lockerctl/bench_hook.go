package main

// benchCommand returns the bench command when it is built in.
var benchCommand = func(*globals) (command, bool) { return nil, false }
