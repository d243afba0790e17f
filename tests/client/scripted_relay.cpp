#include "tests/client/scripted_relay.hpp"

namespace tlsrelay::test {

int select_v2(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
              unsigned inlen, void*) {
  static const unsigned char ours[] = "\x0atlsrelay/2";
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, ours, sizeof ours - 1, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

}  // namespace tlsrelay::test
