#pragma once

#include <filesystem>
#include <string_view>

namespace h2loop::net {

// Writes a fresh self-signed certificate and its private key as PEM files: an EC P-256 key,
// X.509 v3, subject and issuer CN=`common_name`, valid from now (minus a minute of clock-skew
// slack) for one year, SAN DNS:localhost, IP:127.0.0.1, IP:::1 (and DNS:`common_name` when it
// is not "localhost"), extendedKeyUsage serverAuth, basicConstraints CA:FALSE. The key file is
// created with mode 0600. Existing files are replaced.
//
// Meant for start-up (no certificate configured) and tests. Throws std::runtime_error with a
// one-line message (naming the file for I/O failures) on any error.
void generateSelfSigned(const std::filesystem::path& cert_file,
                        const std::filesystem::path& key_file,
                        std::string_view common_name = "localhost");

}  // namespace h2loop::net
