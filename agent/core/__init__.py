"""The foundation every other package builds on: errors, io, config, model source, runtime,
inner loop, answering and the SQuAD loader. Imports nothing of the project above it."""
