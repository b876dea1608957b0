"""Looks inside a PKCS#11 token with python-pkcs11, independently of signet.

    python hsm_probe.py MODULE TOKEN_LABEL list
    python hsm_probe.py MODULE TOKEN_LABEL delete OBJECT_ID_HEX

The user PIN comes from SIGNET_PKCS11_PIN. `list` prints a JSON array of the
token's private keys: label, CKA_ID (hex), CKA_SENSITIVE, CKA_EXTRACTABLE,
and what reading the secret value (CKA_VALUE, or CKA_PRIVATE_EXPONENT for
RSA) gave: "refused: AttributeSensitive" or "read" (a leak). `delete`
destroys the private key with that CKA_ID, as an operator or an accident
might.
"""
import json
import os
import sys

import pkcs11
from pkcs11 import Attribute, KeyType, ObjectClass


def main():
    module, label, command = sys.argv[1:4]
    token = pkcs11.lib(module).get_token(token_label=label)
    with token.open(user_pin=os.environ["SIGNET_PKCS11_PIN"], rw=True) as session:
        keys = list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
        if command == "delete":
            wanted = bytes.fromhex(sys.argv[4])
            doomed = [k for k in keys if k[Attribute.ID] == wanted]
            for k in doomed:
                k.destroy()
            print(json.dumps({"deleted": len(doomed)}))
            return
        out = []
        for k in keys:
            secret = Attribute.PRIVATE_EXPONENT if k.key_type == KeyType.RSA else Attribute.VALUE
            try:
                k[secret]
                read = "read"
            except pkcs11.exceptions.PKCS11Error as e:
                read = f"refused: {type(e).__name__}"
            out.append({
                "label": k.label,
                "id": k[Attribute.ID].hex(),
                "sensitive": k[Attribute.SENSITIVE],
                "extractable": k[Attribute.EXTRACTABLE],
                "secret": read,
            })
        print(json.dumps(out))


if __name__ == "__main__":
    main()
