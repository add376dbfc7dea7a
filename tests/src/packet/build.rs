//! A frame's bytes, every checksum computed from scratch.

use failover_common::csum::checksum_be;

use super::{ETH_LEN, Frame, L4, checksum::pseudo_header_sum, v6::transport};

impl Frame {
    fn l4_bytes(&self) -> (u8, Vec<u8>) {
        match self.l4 {
            L4::IcmpError {
                kind,
                code,
                rest,
                ref about,
                keep,
            } => {
                let embedded = about.ip_packet();
                let mut h = vec![kind, code, 0, 0];
                h.extend_from_slice(&rest.to_be_bytes());
                h.extend_from_slice(&embedded[..keep.min(embedded.len())]);
                let check = checksum_be(&h, 0);
                h[2..4].copy_from_slice(&check.to_be_bytes());
                (1, h)
            }
            _ => transport(&self.l4, &self.payload, self.tcp_window),
        }
    }

    /// The frame's bytes with every checksum computed from scratch.
    pub fn build(&self) -> Vec<u8> {
        let (proto, mut l4) = self.l4_bytes();
        let mut options = self.options.clone();
        while !options.len().is_multiple_of(4) {
            options.push(0); // EOL padding
        }
        let ihl = 20 + options.len();
        let tot_len = (ihl + l4.len()) as u16;

        let mut ip = Vec::with_capacity(ihl);
        ip.push(0x40 | (ihl / 4) as u8);
        ip.push(self.tos);
        ip.extend_from_slice(&tot_len.to_be_bytes());
        ip.extend_from_slice(&self.id.to_be_bytes());
        ip.extend_from_slice(&self.frag_off.to_be_bytes());
        ip.push(self.ttl);
        ip.push(proto);
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(&self.src.octets());
        ip.extend_from_slice(&self.dst.octets());
        ip.extend_from_slice(&options);
        let check = checksum_be(&ip, 0);
        ip[10..12].copy_from_slice(&check.to_be_bytes());

        let pseudo = pseudo_header_sum(self.src, self.dst, proto, l4.len());
        let partial = failover_common::csum::fold(pseudo).to_be_bytes();
        match self.l4 {
            L4::Tcp { .. } if self.partial_checksum => l4[16..18].copy_from_slice(&partial),
            L4::Udp { checksum: true, .. } if self.partial_checksum => {
                l4[6..8].copy_from_slice(&partial)
            }
            L4::Tcp { .. } => {
                let check = checksum_be(&l4, pseudo);
                l4[16..18].copy_from_slice(&check.to_be_bytes());
            }
            L4::Udp { checksum: true, .. } => {
                let mut check = checksum_be(&l4, pseudo);
                if check == 0 {
                    check = 0xffff;
                }
                l4[6..8].copy_from_slice(&check.to_be_bytes());
            }
            _ => {}
        }

        let mut frame = Vec::with_capacity(ETH_LEN + 4 + ip.len() + l4.len());
        frame.extend_from_slice(&self.dst_mac);
        frame.extend_from_slice(&self.src_mac);
        if let Some(vlan) = self.vlan {
            frame.extend_from_slice(&self.vlan_proto.to_be_bytes());
            frame.extend_from_slice(&vlan.to_be_bytes());
        }
        frame.extend_from_slice(&0x0800u16.to_be_bytes());
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&l4);
        frame
    }
}
