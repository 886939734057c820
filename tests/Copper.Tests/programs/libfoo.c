/* A library found through a Copper LD_LIBRARY_PATH; it needs libbar from $ORIGIN. */
int bar_value(void);
int foo_value(void) { return bar_value() + 1; }
