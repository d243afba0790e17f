// Owning pointers for OpenSSL objects: std::unique_ptr with the object's own
// free function, for the PKI code and its tests.
#pragma once

#include <memory>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

namespace tlsrelay::cli {

template <auto free_function>
struct openssl_free {
  template <typename T>
  void operator()(T* object) const {
    free_function(object);
  }
};

template <class T, auto free_function>
using openssl_ptr = std::unique_ptr<T, openssl_free<free_function>>;

using bio_ptr = openssl_ptr<BIO, &BIO_free_all>;
using pkey_ptr = openssl_ptr<EVP_PKEY, &EVP_PKEY_free>;
using x509_ptr = openssl_ptr<X509, &X509_free>;

}  // namespace tlsrelay::cli
