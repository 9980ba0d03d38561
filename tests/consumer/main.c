#include <dsv4/dsv4.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  dsv4_router_config c;
  if (dsv4_router_config_preset("v4-pro", DSV4_ROUTER_DENSE, &c) != DSV4_OK || c.num_experts != 384) return 1;
  printf("dsv4 %s found; v4-pro has %d experts\n", dsv4_version(), c.num_experts);
  return strcmp(dsv4_version(), "0.0.0") == 0;
}
