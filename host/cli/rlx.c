#include "rlx/rlx.h"
#include <stdio.h>
int main(void) { printf("rlx %s\n", rlx_version_string()); return 0; }
