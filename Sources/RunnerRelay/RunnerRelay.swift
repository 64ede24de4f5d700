// The runner-side agent (issue #3).
