#include "greeting.h"

const char *greeting(void) {
  return "Hello from a binary built in a throwaway VM.";
}
