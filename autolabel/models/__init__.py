"""autolabel.models"""
