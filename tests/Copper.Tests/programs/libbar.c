/* The DT_NEEDED neighbour of libfoo, found through libfoo's $ORIGIN runpath. */
int bar_value(void) { return 42; }
